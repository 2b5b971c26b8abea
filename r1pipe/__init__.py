"""r1pipe: the DeepSeek-R1 training recipe as resumable stages described in one YAML file.

Importing the package stays cheap (no torch, no transformers) so the CLI starts instantly;
heavy libraries are imported inside the functions that need them.
"""

__version__ = "0.1.0"
