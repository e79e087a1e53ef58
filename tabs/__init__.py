"""One module per tab: each exposes build(ws) with layout and thin handlers (parse → core → format)."""
