"""Analysis stage, from tables alone (torch-free): the gathered tables, phases and figures."""
