"""The mail templates of better_console, registered when better_mail discovers ``<app>.mail``."""

from __future__ import annotations

from better_mail.templates import MailTemplate


class ConsoleMagicLinkEmail(MailTemplate):
    """The sign-in code of better_console, with an optional link that fills it in."""

    name = "console_magic_link"
    sensitive = True
    code: str
    expires_minutes: int = 10
    console_url: str | None = None
    # The server's own page that verifies the sign-in in one click.
    verify_url: str | None = None

    # The code stays out of the subject: subjects are kept in mail_logs and shown in the admin.
    subject = "Your console sign-in code"
    mjml = """<mjml>
  <mj-head>
    <mj-title>Console sign-in code</mj-title>
    <mj-preview>Your sign-in code is {{ code }}</mj-preview>
    <mj-attributes>
      <mj-all font-family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif" />
      <mj-text font-size="15px" line-height="22px" color="#1f2933" />
    </mj-attributes>
    <mj-style inline="inline">
      .code div { letter-spacing: 6px; }
    </mj-style>
  </mj-head>
  <mj-body background-color="#f4f5f7">
    <mj-section background-color="#ffffff" padding="32px 24px">
      <mj-column>
        <mj-text font-size="20px" font-weight="600">Sign in to the console</mj-text>
        <mj-text>Enter this code to finish signing in:</mj-text>
        <mj-text css-class="code" font-size="32px" font-weight="700" align="center"
                 padding="16px 0">{{ code }}</mj-text>
        {% if verify_url %}
        <mj-button href="{{ verify_url }}" background-color="#1f6feb">
          Verify this sign-in</mj-button>
        {% endif %}
        {% if console_url %}
        <mj-button href="{{ console_url }}" background-color="#1f6feb">Open the console</mj-button>
        {% endif %}
        <mj-text color="#52606d" font-size="13px">The code expires in {{ expires_minutes }}
          minute{{ "s" if expires_minutes != 1 else "" }}. If you did not try to sign in,
          ignore this email.</mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
"""
    preview_data = {
        "code": "482913",
        "expires_minutes": 10,
        "console_url": "https://example.com/.well-known/better/console",
    }
