"""The mail template of the no_tenant project, registered by better_mail's autodiscovery."""

from better_mail import MailTemplate


class OrderConfirmed(MailTemplate):
    name = "order_confirmed"
    subject = "Order {{ number }} confirmed"
    number: str
    preview_data = {"number": "A-1"}
    mjml = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Your order {{ number }} is confirmed.</mj-text>
</mj-column></mj-section></mj-body></mjml>"""
