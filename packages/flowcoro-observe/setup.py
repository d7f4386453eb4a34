"""The optional C extension of flowcoro-observe; everything else is in pyproject.toml.

``flowcoro.observe._recorder`` is the per-request aggregation of the HTTP request histogram
(see its source). ``optional=True``: when it cannot be compiled (no C compiler, no Python
headers) the build goes on and `flowcoro.observe.httpmetrics` uses the identical pure-Python
``flowcoro.observe._pyrecorder``.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "flowcoro.observe._recorder",
            ["src/flowcoro/observe/_recorder.c"],
            optional=True,
        )
    ]
)
