"""The HTTP edge: blueprints, schemas, security and the problem+json error mapping."""

from flask_smorest import Blueprint

from app.api.parsing import OmsParser

# Blueprints bind their parser when ``@blp.arguments`` decorates a view, i.e. when each
# ``app.api.<resource>`` module is imported; this package runs first, so all of them get ours.
Blueprint.ARGUMENTS_PARSER = OmsParser()
