"""Ray Serve entry point: the iids scoring application.

Everything lives in `iids.serving`; this module only names what Serve imports:

- `app`: the deployment without settings, for `serve/config.yaml`, whose
  `user_config` gives the bundle, batching and limits
  (`serve run serve/config.yaml`, or `serve deploy serve/config.yaml`);
- `build`: an application builder taking the settings as arguments
  (`serve run serve.app:build model_uri=runs/quickstart/models/<version>`).

`iids serve --model BUNDLE` runs the same application locally.
"""

from iids.serving import app_builder

app = app_builder()
build = app_builder
