"""`subpt report`: the interpretability report of one or more runs, as one self-contained HTML file.

    from subpt.report.build import write_report
    write_report([run_a, run_b], "report.html")   # what `subpt report RUN [RUN ...]` does

Modules, one per concern: options (the settings), rundata (run folders read back, accuracy analysis), model
(the sections that load the model: decoded context, per-class accuracy, cue), sentences (the summary), figures
and sections (the HTML), build (computing and rendering the report). The trajectory sections are gradflow's
(gradflow.report).
"""
