from django.core.management.base import BaseCommand

from jobs import storage


class Command(BaseCommand):
    help = "Check that object storage answers; create the bucket where S3_CREATE_BUCKET allows it."

    def handle(self, *args: object, **options: object) -> None:
        storage.ensure_bucket()
        storage.check()
        self.stdout.write("storage ready")
