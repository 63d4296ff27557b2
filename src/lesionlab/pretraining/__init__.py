"""Self-supervised pretraining (a ConvNeXt VAE), the frozen-encoder comparison and knowledge distillation.

Entry points: :func:`lesionlab.engine.pretrain.pretrain_vae`,
:func:`lesionlab.engine.compare_pretraining.compare_pretraining` and :func:`lesionlab.engine.distill.distill`
(CLI: ``lesionlab pretrain vae``, ``compare-pretraining``, ``distill``). Nothing is imported here, so
``lesionlab --help`` stays fast.
"""
