"""Finding new threats in our own data: brand look-alikes (``brand``), newly observed
domains (``nod``), feed impact preview (``preview``) and address enrichment, ASN and
country (``geo``). Reads the stores and the policy engine; never the web app or the CLI."""
