"""Cross-margin keeper: follows the chain, margins the whole book, liquidates with witnesses."""

__version__ = "0.1.0"
