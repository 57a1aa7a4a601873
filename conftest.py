"""Root conftest: enables pytester for the harness's own tests (the plugin itself is
registered through the ``pytest11`` entry point, so it is active wherever energybench is installed)."""

pytest_plugins = ["pytester"]
