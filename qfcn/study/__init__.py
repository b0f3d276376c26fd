"""The study layer (L6): the notebook chain as an experiment, from params files to the report.

Callers import the submodules, which are this layer's API::

    from qfcn.study import params, records, report, runner, runs

* :mod:`~qfcn.study.params`: params files, batch points and every up-front parameter check;
* :mod:`~qfcn.study.runs`: run folders, provenance, manifest checks, a step's parameters;
* :mod:`~qfcn.study.records`: the ``metrics.json`` record, built, written and read;
* :mod:`~qfcn.study.runner`: the papermill chain and batches (the notebooks folder is an argument);
* :mod:`~qfcn.study.schema`: the params-file schema, derived from the notebooks' parameters cells;
* :mod:`~qfcn.study.folder`: what a study folder was made from, ``--replace``, the folder lock;
* :mod:`~qfcn.study.cluster`: bounded waits on a Dask scheduler and its workers;
* :mod:`~qfcn.study.commands`: ``study`` and ``sweep`` as the command line runs them;
* :mod:`~qfcn.study.contrasts`: every comparison declared once, paired intervals, MDE, verdicts;
* :mod:`~qfcn.study.report`: tables, the paper-form table, summary.json;
* :mod:`~qfcn.study.frontpage`: index.html, the page a reader reads first.

Nothing is imported here, so that a notebook importing ``runs`` does not pay for papermill,
pandas or torch.

>>> from qfcn.study import runs
>>> runs.data_dir("out").as_posix()
'out/data'
"""
