"""BERT4Rec (Sun et al. 2019): a bidirectional transformer trained with the cloze objective.

All of it is the shared cloze backbone (cloze.py); this file names it and keeps the registry at one line
per backbone. Defaults and their sources are in params.yaml.
"""

from __future__ import annotations

from globaldiff.backbones.cloze import ClozeBackbone


class BERT4Rec(ClozeBackbone):
    pass
