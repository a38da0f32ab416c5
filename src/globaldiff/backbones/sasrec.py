"""SASRec (Kang & McAuley 2018): causal self-attention, next-item prediction at every position.

All of it is the shared causal backbone (causal.py: the network, the `loss` and `readout` options); this file
names it and keeps the registry at one line per backbone. Defaults and their sources are in params.yaml.
"""

from __future__ import annotations

from globaldiff.backbones.causal import CausalBackbone


class SASRec(CausalBackbone):
    pass
