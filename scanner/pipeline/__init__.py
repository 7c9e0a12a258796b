"""The per-message pipeline: parse -> unpack -> checks -> policy -> actions -> reinject."""
