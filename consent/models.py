# Consents, care relationships and emergency access arrive with the [consent] issue.
