"""The web lab: a FastAPI app (``create_app``) serving a plain HTML/CSS/JS page that draws,
trains and explains. Needs the ``lab`` extras (fastapi, uvicorn, pillow)."""
