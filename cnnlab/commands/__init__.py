"""One module per ``cnnlab`` sub-command; each defines ``register(subparsers)``."""
