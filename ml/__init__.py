"""Heart-sound preprocessing, models, bundles and fast inference for LubDub.

Light modules (``errors``, ``audio``, ``quality``, ``features``, ``bundle``) import
no TensorFlow; ``inference``, ``models``, ``training`` and ``export`` do.
"""

__version__ = "0.1.0"
