"""tellme.models: model configs, checkpoint ingestion, quantisation, TLMM packing, numpy reference."""
