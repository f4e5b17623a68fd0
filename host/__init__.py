"""tellme.host: the light runtime (devices, sessions, sampling, tokenizer, CLI)."""
