rule summary:
    """Every dataset's metrics and decoding scores in one table and one figure, and what made
    each (its settings' checksum), for every dataset with results under results/."""
    localrule: LOCAL_LIGHT_RULES
    input:
        unpack(summary_inputs),
    params:
        sheet=list(DATASETS),
    output:
        **({"selection": "results/summary/selection.tsv"} if SWEEPING else {}),
        metrics=report(
            "results/summary/metrics.tsv",
            caption="../report/summary_metrics.rst",
            category="Summary",
        ),
        decoding="results/summary/decoding.tsv",
        datasets=report(
            "results/summary/datasets.tsv",
            caption="../report/summary_datasets.rst",
            category="Summary",
        ),
        png=report(
            "results/summary/metrics.png",
            caption="../report/summary_figure.rst",
            category="Summary",
        ),
        pdf="results/summary/metrics.pdf",
        provenance="results/summary/provenance/summary.json",
        # the run each dataset's sweep chose, with every run's validation loss
    log:
        "logs/summary.log",
    conda:
        "../envs/lfads_core.yaml"
    script:
        "../scripts/summary.py"
