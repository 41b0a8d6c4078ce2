"""The coupling with ESIS: push, pull, activation, readiness, signing, imports and export.

Above the merge (`app.sync`) and the year transition: it decides what a received snapshot
starts and calls down into them."""
