# Specialties, schedules, slots and appointments arrive with the [booking] issue.
