"""Sphinx configuration of the deepaas documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``make
docs``). The build needs deepaas installed (``pip install -e .[docs]``): autodoc
imports it, and the option reference and the sample configuration file are read
from the ``deepaas`` entry point in the ``oslo.config.opts`` namespace.
"""

from __future__ import annotations

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import deepaas  # noqa: E402

project = "deepaas"
author = "deepaas developers"
copyright = "deepaas developers"
release = deepaas.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    # sphinx.ext.intersphinx stays off: the build must not need the network.
    "oslo_config.sphinxext",
    "oslo_config.sphinxconfiggen",
]

root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
# _reference_2_6_0.md is a working note, not a page; _generated holds build output.
exclude_patterns = ["_build", "_generated", "_reference_2_6_0.md", "**/.*"]
templates_path: list[str] = []
pygments_style = "sphinx"
nitpicky = False

# oslo_config.sphinxconfiggen: write the sample configuration file at build time,
# from the same generator file as ``make genconfig`` (its output is not committed
# here; etc/deepaas.conf.sample is).
config_generator_config_file = [
    (
        os.path.join(os.path.dirname(HERE), "etc", "deepaas-config-generator.conf"),
        "_generated/deepaas",
    ),
]

# autodoc / napoleon (Google-style docstrings, as the code uses).
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Render "Attributes:" sections as fields, so they do not clash with autodoc's own
# entries for the same attributes (duplicate object descriptions).
napoleon_use_ivar = True

if importlib.util.find_spec("sphinx_rtd_theme") is not None:
    html_theme = "sphinx_rtd_theme"
else:
    html_theme = "alabaster"
html_title = f"deepaas {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
