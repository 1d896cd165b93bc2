import factory

from accounts.models import Clinic, Membership, Role, User


class ClinicFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Clinic
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Praxis {n}")
    slug = factory.Sequence(lambda n: f"praxis-{n}")
    city = "Berlin"
    address = factory.Sequence(lambda n: f"Musterstraße {n}, 10115 Berlin")


class StaffFactory(factory.django.DjangoModelFactory):
    """A staff account (practitioner by default) with a membership at a clinic."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"staff{n}@example.com")
    role = Role.PRACTITIONER
    first_name = "Anna"
    last_name = "Berger"
    password = factory.PostGenerationMethodCall("set_password", "Lange-Reise-2026")

    @factory.post_generation
    def clinic(self, create, extracted, **kwargs):
        if create:
            Membership.objects.create(
                user=self, clinic=extracted or ClinicFactory(), role=self.role
            )
            self.save()
