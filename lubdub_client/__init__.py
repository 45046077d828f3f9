"""`lubdub`: the command-line client of a LubDub server.

A package of its own so that a clinic laptop can install it alone
(`pip install 'lubdub[client]'`): it needs requests, tqdm and zipstream-ng, and
imports nothing of the server (Django, the `jobs` app, `ml`, TensorFlow).

    main       the argument parser and the entry point (`lubdub = lubdub_client.main:main`)
    server     the HTTP session: address, token, retries of answers that mean "try again"
    upload     the request body of an upload: a file, or a zip streamed with its length known
    submit     `lubdub submit`
    batches    `status`, `list`, `cancel`, `delete`, `models`, and waiting for a batch
    reports    `results` and `report`
    reanalysis `reanalyze` and `diff`
    args       argparse with one-line usage errors and examples in --help; argument types
    errors     CliError, the one kind of failure the client reports
"""
