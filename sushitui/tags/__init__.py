"""Tags: normalisation, query language, aliases, groups, dictionary, autocomplete."""
