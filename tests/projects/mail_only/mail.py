"""The mail template of the mail_only project, registered by better_mail's autodiscovery."""

from better_mail import MailTemplate


class Welcome(MailTemplate):
    name = "welcome"
    subject = "Welcome, {{ person }}"
    person: str
    preview_data = {"person": "Ada"}
    mjml = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello {{ person }}, your workspace is ready.</mj-text>
</mj-column></mj-section></mj-body></mjml>"""
