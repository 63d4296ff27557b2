"""``lesionlab serve``: the REST API and web page for a trained run, an ensemble or an ONNX export."""

from __future__ import annotations

import argparse

from lesionlab.config.serving import ServeConfig, add_serve_arguments, serve_config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="REST API + web page for a trained run, ensemble or ONNX export",
        description="Serve MODEL over HTTP: the web page at /, POST /v1/predict (multipart image + optional age, "
        "sex, site), POST /v1/predict/batch, GET /v1/model, GET /healthz, OpenAPI docs at /docs. Decision support, "
        "not a diagnosis. Binds to 127.0.0.1 unless --host says otherwise.",
        epilog="examples:\n  lesionlab serve runs/default-... --port 8000\n"
        "  lesionlab serve runs/default-.../model.onnx --workers 4\n"
        "  curl -F image=@lesion.jpg -F age=55 -F sex=female http://127.0.0.1:8000/v1/predict")
    p.add_argument("model", nargs="*", metavar="MODEL",
                   help="run directory, model.pt, model.onnx or ensemble manifest; several = an ensemble; none = the "
                   "built-in model")
    add_serve_arguments(p)
    p.add_argument("--quality", action="append", default=[], metavar="KEY=VALUE",
                   help="input quality gate setting, e.g. min_side=64 or enabled=false (repeatable; see GET /v1/model)")
    p.set_defaults(func=cmd_serve)


def serve_config(args: argparse.Namespace) -> ServeConfig:
    return serve_config_from_args(args)  # one flag per ServeConfig field (lesionlab.config.serving)


def cmd_serve(args: argparse.Namespace) -> int:
    from lesionlab.builtin.registry import resolve_model_ref

    cfg = serve_config(args)
    model = args.model if len(args.model) > 1 else (args.model[0] if args.model else None)
    for ref in args.model:  # a mistyped model is an error before anything loads, never the built-in model
        resolve_model_ref(ref)
    from lesionlab.inference.quality import QualityConfig
    from lesionlab.serving.api import serve
    from lesionlab.serving.predictor import Predictor

    predictor = Predictor.load(model, max_pixels=cfg.max_pixels, quality=QualityConfig.from_overrides(args.quality))
    print(f"Serving {predictor.card.name} ({predictor.backend}) on http://{cfg.host}:{cfg.port}/ "
          f"(API docs: /docs). Decision support, not a diagnosis.", flush=True)
    serve(predictor, cfg, log_level="warning" if args.quiet else "info")
    return 0
