"""Pictures and pages for a person: contact sheets of identifications."""
