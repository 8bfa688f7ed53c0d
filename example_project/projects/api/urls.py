"""URLs of the API, mounted under ``/api/`` by ``example_project.urls``."""

from django.urls import path

from example_project.projects.api import views

app_name = "saas_api"

urlpatterns = [
    path("auth/signup", views.SignupView.as_view(), name="signup"),
    path("auth/token", views.TokenView.as_view(), name="token"),
    path("me", views.MeView.as_view(), name="me"),
    path("projects", views.ProjectListView.as_view(), name="projects"),
    path("projects/<int:pk>", views.ProjectDetailView.as_view(), name="project"),
    path("projects/<int:pk>/tasks", views.ProjectTasksView.as_view(), name="project-tasks"),
    path("tasks/<int:pk>/complete", views.TaskCompleteView.as_view(), name="task-complete"),
    path("invites", views.InviteView.as_view(), name="invites"),
    path("audit", views.AuditView.as_view(), name="audit"),
]
