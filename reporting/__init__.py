"""A sweep's report, piece by piece: report.py writes it.

    paper_tables.py  the paper's numbers (Tables 3-5), the settings' names and order
    loading.py       the runs of a sweep, which of them are counted, and why not
    paired.py        mean ± sd over seeds and the paired t interval between settings
    tables.py        results.md: the paper's table layout, differences, runs, recipe
    plots.py         curves.png, gap.png, activations.png, prelu_slopes.png, rectifiers.png
"""
