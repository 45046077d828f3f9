from django.conf import settings
from django.core.management.base import BaseCommand

from jobs import storage
from jobs.services import media_folder


class Command(BaseCommand):
    help = (
        "Check that object storage answers; create the bucket where S3_CREATE_BUCKET allows it, and set "
        "its CORS rule so that the upload page may send parts straight to it from "
        "LUBDUB_STORAGE_CORS_ORIGINS. On filesystem storage, mark LUBDUB_MEDIA_ROOT as the web's media "
        "folder: run it where the web runs."
    )

    def handle(self, *args: object, **options: object) -> None:
        storage.ensure_bucket()
        storage.check()
        if storage.uses_s3():
            self._allow_browser_uploads(settings.LUBDUB_STORAGE_CORS_ORIGINS)
        folder = media_folder.mark()
        if folder is not None:
            self.stdout.write(f"media folder {folder.path} marked ({folder.marker}); workers must see it")
        self.stdout.write("storage ready")

    def _allow_browser_uploads(self, origins: list[str]) -> None:
        # On filesystem storage parts go through the app's own endpoint: no CORS there.
        if not origins:
            self.stdout.write(
                self.style.WARNING(
                    "bucket CORS not set: no LUBDUB_STORAGE_CORS_ORIGINS (nor DJANGO_CSRF_TRUSTED_ORIGINS "
                    "or LUBDUB_PUBLIC_URL), so browsers may not send upload parts straight to the bucket"
                )
            )
            return
        allowed = ", ".join(origins)
        try:
            changed = storage.allow_browser_uploads(origins)
        except storage.CorsUnsupported as exc:
            self.stdout.write(
                self.style.WARNING(
                    f"bucket CORS skipped: {exc}; allow PUT from {allowed} in the server's own CORS "
                    "settings (MinIO: MINIO_API_CORS_ALLOW_ORIGIN, which allows every origin by default)"
                )
            )
            return
        self.stdout.write(f"bucket CORS {'set' if changed else 'already set'}: PUT, GET, HEAD from {allowed}")
