"""The web API's routes, one module per panel; each reads the app's shared state
(``registry``, ``trainer``, ``data_dir``) from ``request.app.state``."""
