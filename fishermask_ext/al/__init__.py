"""The active-learning driver on top of the backend and the strategies: data sets, the resumable
experiment loop, its report and the `fishermask` command. Installed with the `al` extra
(scikit-learn, matplotlib, tqdm); nothing in the backend imports it.

    config.py      the one config schema (keys, types, defaults, help, CLI flags)
    data.py        data sets as normalised tensors
    loop.py        run_experiment, ActiveLearningLoop
    training.py    build, train and evaluate one round's model
    preflight.py   what run_experiment checks and warms up before it writes anything
    io.py          atomic writes and JSON files of a results folder
    report.py      curves, plot and summary of a results folder
    cli.py         the `fishermask` command, one function pair per subcommand (bench and
                   info are the backend's: fishermask_ext/bench.py, fishermask_ext/info.py)
    pool_files.py  the files of `fishermask select` (embeddings, labeled points, picks)
    embed_cmd.py   `fishermask embed` (a checkpoint and a data set into a store)
"""
