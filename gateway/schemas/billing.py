"""HTTP shapes of plans, invoices, transactions, subscriptions, exchange rates, revenue and
metrics (ChartMogul REST API v1 §2.7–2.10, §2.13, and our own routes).

Request schemas check shapes early (a wrong type is a 422 naming the field); the
billing_sync service decides the rest. An invoice import body is checked invoice by invoice
in the service, so one bad invoice is reported with its errors while the others import.
Response schemas document the answers in the OpenAPI document.
"""
from marshmallow import Schema, ValidationError, fields, validate

from gateway.schemas.fields import Lenient, StrictString, PerPage

INTERVAL_UNITS = ("day", "week", "month", "quarter", "year")


class UncheckedList(fields.List):
    """A list documented by its item schema but handed on as given: the service checks each
    item on its own, so one bad item does not refuse the others."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ValidationError("must be a list of objects")
        return value


# ---- plans ----

class PlanCreate(Lenient):
    data_source_uuid = StrictString(required=True, validate=validate.Length(min=1, max=40))
    name = StrictString(required=True, validate=validate.Length(min=1, max=500))
    interval_count = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1000))
    interval_unit = StrictString(required=True, validate=validate.OneOf(INTERVAL_UNITS))
    external_id = StrictString(allow_none=True, validate=validate.Length(max=500))


class PlanUpdate(Lenient):
    name = StrictString(validate=validate.Length(min=1, max=500))
    interval_count = fields.Integer(strict=True, validate=validate.Range(min=1, max=1000))
    interval_unit = StrictString(validate=validate.OneOf(INTERVAL_UNITS))


class PlanListQuery(Lenient):
    data_source_uuid = fields.String()
    external_id = fields.String()
    system = fields.String()
    cursor = fields.String()
    per_page = PerPage()


class PlanOut(Schema):
    uuid = fields.String()
    data_source_uuid = fields.String()
    name = fields.String()
    interval_count = fields.Integer()
    interval_unit = fields.String()
    external_id = fields.String()


class PlanPage(Schema):
    plans = fields.List(fields.Nested(PlanOut))
    has_more = fields.Boolean()
    cursor = fields.String(allow_none=True)


# ---- invoices, lines, transactions ----

class TransactionIn(Lenient):
    type = StrictString(required=True, validate=validate.OneOf(("payment", "refund")))
    result = StrictString(required=True, validate=validate.OneOf(("successful", "failed")))
    date = StrictString(required=True, metadata={"format": "date-time"})
    amount_in_cents = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0))
    external_id = StrictString(allow_none=True)
    transaction_fees_in_cents = fields.Integer(strict=True, allow_none=True)
    transaction_fees_currency = StrictString(allow_none=True)


class LineItemIn(Lenient):
    """Documents a line of an imported invoice (checked in the billing service)."""

    type = fields.String(required=True, validate=validate.OneOf(("subscription", "one_time", "trial")))
    amount_in_cents = fields.Integer(required=True, metadata={"description": "after discounts, tax included"})
    quantity = fields.Integer()
    subscription_external_id = fields.String()
    subscription_set_external_id = fields.String()
    plan_uuid = fields.String()
    service_period_start = fields.String(metadata={"format": "date-time"})
    service_period_end = fields.String(metadata={"format": "date-time"})
    cancelled_at = fields.String(metadata={"format": "date-time"})
    prorated = fields.Boolean()
    proration_type = fields.String(validate=validate.OneOf(("differential", "full", "differential_mrr")))
    discount_code = fields.String()
    discount_amount_in_cents = fields.Integer()
    discount_description = fields.String()
    tax_amount_in_cents = fields.Integer()
    transaction_fees_in_cents = fields.Integer()
    transaction_fees_currency = fields.String()
    external_id = fields.String()
    account_code = fields.String()
    description = fields.String()
    event_order = fields.Integer()


class InvoiceIn(Lenient):
    """Documents an imported invoice (checked in the billing service, invoice by invoice)."""

    external_id = fields.String(required=True)
    date = fields.String(required=True, metadata={"format": "date-time"})
    currency = fields.String(required=True, metadata={"description": "ISO-4217"})
    due_date = fields.String(metadata={"format": "date-time"})
    customer_external_id = fields.String()
    data_source_uuid = fields.String()
    collection_method = fields.String(validate=validate.OneOf(("automatic", "manual")))
    line_items = fields.List(fields.Nested(LineItemIn), required=True)
    transactions = fields.List(fields.Nested(TransactionIn))


class InvoiceImport(Lenient):
    invoices = UncheckedList(fields.Nested(InvoiceIn), required=True, validate=validate.Length(min=1, max=500))


class InvoiceListQuery(Lenient):
    customer_uuid = fields.String()
    data_source_uuid = fields.String()
    external_id = fields.String()
    validation_type = fields.String(validate=validate.OneOf(("valid", "invalid", "all")))
    include_edit_histories = fields.Boolean()
    with_disabled = fields.Boolean()
    cursor = fields.String()
    per_page = PerPage()


class PageQuery(Lenient):
    cursor = fields.String()
    per_page = PerPage()


class LineItemOut(Schema):
    uuid = fields.String()
    external_id = fields.String(allow_none=True)
    type = fields.String()
    subscription_uuid = fields.String(allow_none=True)
    subscription_external_id = fields.String(allow_none=True)
    subscription_set_external_id = fields.String(allow_none=True)
    plan_uuid = fields.String(allow_none=True)
    prorated = fields.Boolean()
    proration_type = fields.String()
    service_period_start = fields.String(allow_none=True)
    service_period_end = fields.String(allow_none=True)
    cancelled_at = fields.String(allow_none=True)
    amount_in_cents = fields.Integer()
    quantity = fields.Integer()
    discount_code = fields.String(allow_none=True)
    discount_amount_in_cents = fields.Integer()
    discount_description = fields.String(allow_none=True)
    tax_amount_in_cents = fields.Integer()
    transaction_fees_in_cents = fields.Integer()
    transaction_fees_currency = fields.String(allow_none=True)
    account_code = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    event_order = fields.Integer(allow_none=True)
    mrr = fields.Integer(metadata={"description": "the MRR this line sets or adds, account cents (ours)"})


class TransactionOut(Schema):
    uuid = fields.String()
    external_id = fields.String(allow_none=True)
    type = fields.String()
    date = fields.String()
    result = fields.String()
    amount_in_cents = fields.Integer(allow_none=True)
    transaction_fees_in_cents = fields.Integer(allow_none=True)
    transaction_fees_currency = fields.String(allow_none=True)


class InvoiceOut(Schema):
    uuid = fields.String()
    external_id = fields.String()
    customer_uuid = fields.String()
    customer_external_id = fields.String(allow_none=True)
    data_source_uuid = fields.String()
    currency = fields.String()
    exchange_rate = fields.String(metadata={"description": "rate into the account currency used (ours)"})
    status = fields.String(metadata={"description": "paid, past_due or open"})
    date = fields.String()
    due_date = fields.String(allow_none=True)
    collection_method = fields.String(allow_none=True)
    total_in_cents = fields.Integer()
    disabled = fields.Boolean()
    line_items = fields.List(fields.Nested(LineItemOut))
    transactions = fields.List(fields.Nested(TransactionOut))


class InvoiceList(Schema):
    invoices = fields.List(fields.Nested(InvoiceOut))


class InvoicePage(Schema):
    invoices = fields.List(fields.Nested(InvoiceOut))
    customer_uuid = fields.String()
    has_more = fields.Boolean()
    cursor = fields.String(allow_none=True)


# ---- subscriptions ----

class CancelIn(Lenient):
    cancelled_at = StrictString(allow_none=True, metadata={"format": "date-time"})
    cancellation_dates = fields.List(StrictString(), allow_none=True)


class SubscriptionRef(Lenient):
    data_source_uuid = StrictString()
    uuid = StrictString(required=True)


class SubscriptionRefs(Lenient):
    subscriptions = fields.List(fields.Nested(SubscriptionRef), required=True)


class ImportSubscriptionOut(Schema):
    uuid = fields.String()
    external_id = fields.String()
    subscription_set_external_id = fields.String(allow_none=True)
    plan_uuid = fields.String(allow_none=True)
    customer_uuid = fields.String()
    data_source_uuid = fields.String()
    cancellation_dates = fields.List(fields.String())


class ImportSubscriptionPage(Schema):
    customer_uuid = fields.String()
    subscriptions = fields.List(fields.Nested(ImportSubscriptionOut))
    has_more = fields.Boolean()
    cursor = fields.String(allow_none=True)


class SubscriptionEntry(Schema):
    id = fields.Integer()
    uuid = fields.String()
    external_id = fields.String()
    subscription_set_external_id = fields.String(allow_none=True)
    plan = fields.String(allow_none=True)
    plan_uuid = fields.String(allow_none=True)
    quantity = fields.Integer()
    mrr = fields.Integer()
    arr = fields.Integer()
    status = fields.String(metadata={"description": "active, past_due or cancelled"})
    billing_cycle = fields.String(data_key="billing-cycle", allow_none=True)
    billing_cycle_count = fields.Integer(data_key="billing-cycle-count", allow_none=True)
    start_date = fields.String(data_key="start-date")
    end_date = fields.String(data_key="end-date", allow_none=True)
    currency = fields.String()
    currency_sign = fields.String(data_key="currency-sign")


class SubscriptionPage(Schema):
    entries = fields.List(fields.Nested(SubscriptionEntry))
    has_more = fields.Boolean()
    cursor = fields.String(allow_none=True)
    per_page = PerPage()


# ---- exchange rates, revenue, metrics ----

class RateIn(Lenient):
    date = StrictString(required=True, metadata={"format": "date"})
    rate = fields.Raw(required=True, metadata={"type": "string", "description": "a decimal, e.g. \"1.0825\""})


class RatesIn(Lenient):
    rates = fields.List(fields.Nested(RateIn), required=True, validate=validate.Length(min=1, max=10_000))


class RateOut(Schema):
    date = fields.String()
    rate = fields.String()


class RatesOut(Schema):
    currency = fields.String()
    account_currency = fields.String()
    rates = fields.List(fields.Nested(RateOut))


class RevenueMonth(Schema):
    month = fields.String(metadata={"description": "YYYY-MM"})
    recognized = fields.Integer()
    deferred = fields.Integer()


class RevenueSchedule(Schema):
    customer_uuid = fields.String()
    currency = fields.String()
    entries = fields.List(fields.Nested(RevenueMonth))


class MetricsQuery(Lenient):
    start_date = fields.String(data_key="start-date", required=True)
    end_date = fields.String(data_key="end-date", required=True)
    interval = fields.String(validate=validate.OneOf(("day", "week", "month", "quarter")))
    geo = fields.String()
    plans = fields.String()
    filters = fields.String()


class MetricsSummary(Schema):
    current = fields.Integer()
    previous = fields.Integer()
    percentage_change = fields.Float(data_key="percentage-change")


class MrrEntry(Schema):
    date = fields.String()
    mrr = fields.Integer()
    mrr_new_business = fields.Integer(data_key="mrr-new-business")
    mrr_expansion = fields.Integer(data_key="mrr-expansion")
    mrr_contraction = fields.Integer(data_key="mrr-contraction")
    mrr_churn = fields.Integer(data_key="mrr-churn")
    mrr_reactivation = fields.Integer(data_key="mrr-reactivation")
    percentage_change = fields.Float(data_key="percentage-change")


class MrrSeries(Schema):
    entries = fields.List(fields.Nested(MrrEntry))
    summary = fields.Nested(MetricsSummary)


class ArrEntry(Schema):
    date = fields.String()
    arr = fields.Integer()
    percentage_change = fields.Float(data_key="percentage-change")


class ArrSeries(Schema):
    entries = fields.List(fields.Nested(ArrEntry))
    summary = fields.Nested(MetricsSummary)


class CustomerCountEntry(Schema):
    date = fields.String()
    customers = fields.Integer()
    percentage_change = fields.Float(data_key="percentage-change")


class CustomerCountSeries(Schema):
    entries = fields.List(fields.Nested(CustomerCountEntry))
    summary = fields.Nested(MetricsSummary)
