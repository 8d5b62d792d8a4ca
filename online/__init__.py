"""The online feature store's writer side: seed Redis from a build, push item updates (one item, a bulk
file in the data contract's format, or a stream of lines). The serving side is ``runtime/online.py``."""
