"""Adapters: the FisherMask and BAIT strategies inside other active-learning frameworks.

One module per framework, importable only where that framework is installed (this package
imports none of them): `skactiveml` (scikit-activeml query strategies `Bait`, `FisherMask`),
`modal` (modAL query strategies `bait_query`, `fishermask_query`), `baal` (`FisherHeuristic` for
`ActiveLearningLoop`, `fisher_loop`), `deepal` (DeepAL/BADGE-style `BaitSampling`,
`FisherMaskSampling`). Each is a thin layer over `fishermask_ext.strategies` (torch models)
or over `select_batch` on the linear-softmax Fisher embedding of a scikit-learn classifier
(`_embed`); nothing in the backend or the driver imports this package (docs/DEVELOPING.md).
Extras: `pip install -c .ci/constraints.txt "fishermask_ext[adapters]"` (or `[skactiveml]`,
`[baal]`, `[modal]`).
"""
