"""esis-sync: one-way ESIS to Mijnschoolinfo roster sync with provenance."""
