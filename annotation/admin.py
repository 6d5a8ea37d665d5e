from django.contrib import admin

from .models import Annotation, Assignment, Item, ItemResponse, Membership, Project, Prompt, Response


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "mode", "status", "created_at"]
    list_filter = ["mode", "status"]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "is_paused", "paused_reason"]
    list_filter = ["is_paused", "project"]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["external_id", "project", "round", "created_at"]
    list_filter = ["project"]
    search_fields = ["external_id"]


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt", "model_name", "checkpoint"]
    search_fields = ["model_name"]
    raw_id_fields = ["prompt", "checkpoint"]


class ItemResponseInline(admin.TabularInline):
    model = ItemResponse
    extra = 0
    raw_id_fields = ["response"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "is_gold", "priority", "annotations_count", "overlap", "is_complete"]
    list_filter = ["project", "is_gold", "is_complete"]
    raw_id_fields = ["prompt"]
    inlines = [ItemResponseInline]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "item", "rater", "status", "expires_at"]
    list_filter = ["status", "project"]
    raw_id_fields = ["item"]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["id", "item", "rater", "source", "created_at"]
    list_filter = ["source", "item__project"]
    raw_id_fields = ["item", "assignment"]
