"""Tables and figures from the files the pipeline wrote (no training): `table` is the one table model and its
Markdown, LaTeX and CSV renderers; `readers` reads the inputs from paths passed in; `aggregate` turns seeds
into means; one module per table family (`table1`, `table2`, `table3`, `attribution`, `ablations`,
`longterm`, `fusion_sweep`); `significance` the paired tests; `figures` the plots. Which datasets and
backbones appear comes from the study params and the backbone registry, never from a list here."""
