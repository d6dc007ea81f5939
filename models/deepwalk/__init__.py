"""``deepwalk``: DeepWalk and node2vec node embeddings (``family.py``), their random walks
(``walks.py``) and skip-gram (``skipgram.py``)."""

from models.deepwalk.family import FAMILY

__all__ = ["FAMILY"]
