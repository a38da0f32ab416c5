"""The backbone registry: params name -> class name, in the module of the same name in this folder.

Adding a backbone is one file here and one line below. This file is pure data on purpose: every stage that
builds a backbone imports it, so it is the one project file the stage deps in dvc.yaml leave out (a new name
retrains nothing else); tests/test_stage_deps.py checks that it stays a single literal dict.
"""

REGISTRY = {
    "sasrec": "SASRec",
    "bert4rec": "BERT4Rec",
    "cbit": "CBiT",
    "srgnn": "SRGNN",
    "gru4rec": "GRU4Rec",
    "caser": "Caser",
    "lightsans": "LightSANs",
    "cl4srec": "CL4SRec",
    "duorec": "DuoRec",
    "actsr": "ACTSR",
    "diffurec": "DiffuRec",
}
