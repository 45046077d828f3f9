from django.core.management.base import BaseCommand

from jobs import storage
from jobs.services import media_folder


class Command(BaseCommand):
    help = (
        "Check that object storage answers; create the bucket where S3_CREATE_BUCKET allows it. "
        "On filesystem storage, mark LUBDUB_MEDIA_ROOT as the web's media folder: run it where the web runs."
    )

    def handle(self, *args: object, **options: object) -> None:
        storage.ensure_bucket()
        storage.check()
        folder = media_folder.mark()
        if folder is not None:
            self.stdout.write(f"media folder {folder.path} marked ({folder.marker}); workers must see it")
        self.stdout.write("storage ready")
