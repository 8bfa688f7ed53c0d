"""Mail templates of the example SaaS (found by better_mail's autodiscovery of ``<app>.mail``)."""

from better_mail import MailTemplate


class WelcomeEmail(MailTemplate):
    """Sent once an account joins a tenant, by sign-up or by invite."""

    name = "welcome"
    user_email: str
    tenant_name: str
    tenant_slug: str
    role: str = "member"
    app_url: str = "http://127.0.0.1:8000/"

    subject = "Welcome to {{ tenant_name }}"
    mjml = """<mjml>
  <mj-head>
    <mj-title>Welcome to {{ tenant_name }}</mj-title>
    <mj-preview>Your account {{ user_email }} is ready.</mj-preview>
    <mj-attributes>
      <mj-all font-family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif" />
      <mj-text font-size="15px" line-height="22px" color="#1f2933" />
    </mj-attributes>
  </mj-head>
  <mj-body background-color="#f4f5f7">
    <mj-section background-color="#ffffff" padding="32px 24px">
      <mj-column>
        <mj-text font-size="20px" font-weight="600">Welcome to {{ tenant_name }}</mj-text>
        <mj-text>Your account <strong>{{ user_email }}</strong> now has the role
          <strong>{{ role }}</strong> in {{ tenant_name }}. Sign in with your email, your
          password and the tenant <strong>{{ tenant_slug }}</strong>.</mj-text>
        <mj-button href="{{ app_url }}" background-color="#1f6feb">
          Open {{ tenant_name }}</mj-button>
        <mj-text color="#52606d" font-size="13px">
          If you did not sign up, ignore this email.</mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
"""
    text = """Welcome to {{ tenant_name }}

Your account {{ user_email }} now has the role {{ role }} in {{ tenant_name }}.
Sign in with your email, your password and the tenant "{{ tenant_slug }}": {{ app_url }}

If you did not sign up, ignore this email.
"""
    preview_data = {
        "user_email": "alice@acme.test",
        "tenant_name": "Acme",
        "tenant_slug": "acme",
        "role": "owner",
    }
