from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training"

    def ready(self):
        from annotation.project_config import register_config_check

        from .arena import sources_check

        register_config_check("arena", sources_check)  # annotation checks an arena's sources' shape, training that they exist
