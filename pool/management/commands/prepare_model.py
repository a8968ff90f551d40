from django.core.management.base import BaseCommand, CommandError

from pool.model_file import ModelFileError, ensure_model


class Command(BaseCommand):
    help = "Assemble the default model if needed and check the configured one."

    def handle(self, *args, **options):
        try:
            choice = ensure_model(progress=self.stdout.write)
        except ModelFileError as exc:
            raise CommandError(str(exc)) from None
        if options["verbosity"] > 1:
            self.stdout.write(f"model: {choice.path} (id {choice.model_id})")
