"""The Ray Serve entry point of iids (see `serve/app.py` and `serve/config.yaml`)."""
