"""Self-supervised pretraining (a ConvNeXt VAE), the frozen-encoder comparison and knowledge distillation.

Entry points: :func:`lesionlab.pretraining.runner.pretrain_vae`,
:func:`lesionlab.pretraining.compare.compare_pretraining` and :func:`lesionlab.pretraining.distill.distill`
(CLI: ``lesionlab pretrain vae``, ``compare-pretraining``, ``distill``). Nothing is imported here, so
``lesionlab --help`` stays fast.
"""
