def pytest_configure(config):
    config.addinivalue_line("markers", "release: a timing, run by `make smoke` on the release binary")
