"""The active-learning driver on top of the backend: strategies, data sets, the resumable
experiment loop, its report and the `fishermask` command. Installed with the `al` extra
(scikit-learn, matplotlib, tqdm); nothing in the backend imports it.

    config.py      the one config schema (keys, types, defaults, help, CLI flags)
    strategies/    the query strategies and their registry (`strategies.get`)
    data.py        data sets as normalised tensors
    loop.py        run_experiment, ActiveLearningLoop
    io.py          atomic writes and JSON files of a results folder
    report.py      curves, plot and summary of a results folder
    cli.py         the `fishermask` command
"""
