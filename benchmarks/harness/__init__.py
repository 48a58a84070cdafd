"""`leangate bench`: leangate, LiteLLM, Portkey and a direct baseline on the same requests.

Everything runs on loopback against `leangate stub-upstream --prompt-cache`: the scenarios in
`scenarios.py`, the gateways in `gateways.py` and `peers.py`, the load client in `load.py`, and the
orchestration in `run.py`. `report.py` turns the results into Markdown tables and a PNG chart.
"""
