"""Plan, invoice, transaction, subscription, exchange rate, revenue and metrics routes
(ChartMogul REST API v1 §2.7–2.10, §2.13; exchange rates and the revenue schedule are ours).
billing_sync owns all of it; each route is one RPC."""
from gateway.auth import ADMIN, WRITE
from gateway.http import api
from gateway.schemas import billing as schemas

IMPORT = "/v1/import"
# An invoice batch (up to 500 invoices of up to 1,000 lines each) may be larger than the 1 MiB
# every other body is held to; this bounds what one request can make the gateway hold in memory.
INVOICE_BATCH_MAX_BODY = 10 * 1024 * 1024
PLANS = "/v1/plans"
INVOICES = "/v1/invoices"
C = "/v1/customers"


class BillingRoutes:
    # ---- plans ----

    @api("POST", PLANS, permission=WRITE, body=schemas.PlanCreate(), response=schemas.PlanOut(), status=201,
         summary="Create a plan")
    def create_plan(self, request, body):
        return 201, self.billing_rpc.create_plan(body)

    @api("GET", PLANS, query=schemas.PlanListQuery(), response=schemas.PlanPage(), summary="List plans")
    def list_plans(self, request, query):
        cursor, per_page = query.pop("cursor", None), query.pop("per_page", None)
        return self.billing_rpc.list_plans(query, cursor, per_page)

    @api("GET", f"{PLANS}/<uuid>", response=schemas.PlanOut(), summary="Retrieve a plan")
    def get_plan(self, request, uuid):
        return self.billing_rpc.get_plan(uuid)

    @api("PATCH", f"{PLANS}/<uuid>", permission=WRITE, body=schemas.PlanUpdate(), response=schemas.PlanOut(),
         summary="Rename a plan, or change its interval while no invoice bills it")
    def update_plan(self, request, uuid, body):
        return self.billing_rpc.update_plan(uuid, body)

    @api("DELETE", f"{PLANS}/<uuid>", permission=WRITE, status=204, summary="Delete a plan no invoice bills")
    def delete_plan(self, request, uuid):
        self.billing_rpc.delete_plan(uuid)
        return 204, None

    # ---- invoices and transactions ----

    @api("POST", f"{IMPORT}/customers/<uuid>/invoices", permission=WRITE, body=schemas.InvoiceImport(),
         response=schemas.InvoiceList(), status=201, max_body=INVOICE_BATCH_MAX_BODY,
         summary="Import a customer's invoices (one bad invoice is a 422 listing its errors; the others import)")
    def import_invoices(self, request, uuid, body):
        answer = self.billing_rpc.import_invoices(uuid, body["invoices"])
        if answer["failed"]:
            total = len(answer["invoices"])
            return 422, {"code": 422, "message": f"{answer['failed']} of {total} invoices could not be imported "
                                                 f"(see their errors); the others were imported",
                         "param": "invoices", "invoices": answer["invoices"]}
        return 201, {"invoices": answer["invoices"]}

    @api("GET", f"{IMPORT}/customers/<uuid>/invoices", query=schemas.PageQuery(), response=schemas.InvoicePage(),
         summary="List a customer's invoices")
    def list_customer_invoices(self, request, uuid, query):
        page = self.billing_rpc.list_invoices({"customer_uuid": uuid}, query.get("cursor"), query.get("per_page"))
        return {"invoices": page["invoices"], "customer_uuid": uuid, "has_more": page["has_more"],
                "cursor": page["cursor"]}

    @api("GET", INVOICES, query=schemas.InvoiceListQuery(), response=schemas.InvoicePage(), summary="List invoices")
    def list_invoices(self, request, query):
        cursor, per_page = query.pop("cursor", None), query.pop("per_page", None)
        filters = {key: query[key] for key in ("customer_uuid", "data_source_uuid", "external_id") if query.get(key)}
        page = self.billing_rpc.list_invoices(filters, cursor, per_page)
        return {"invoices": page["invoices"], "has_more": page["has_more"], "cursor": page["cursor"]}

    @api("GET", f"{INVOICES}/<uuid>", response=schemas.InvoiceOut(), summary="Retrieve an invoice")
    def get_invoice(self, request, uuid):
        return self.billing_rpc.get_invoice(uuid)

    @api("DELETE", f"{INVOICES}/<uuid>", permission=WRITE, status=204,
         summary="Delete an invoice (its customer's MRR is recomputed)")
    def delete_invoice(self, request, uuid):
        self.billing_rpc.delete_invoice(uuid)
        return 204, None

    @api("DELETE", "/v1/data_sources/<data_source_uuid>/customers/<customer_uuid>/invoices", permission=WRITE,
         status=204, summary="Delete every invoice of a customer in a data source")
    def delete_customer_invoices(self, request, data_source_uuid, customer_uuid):
        self.billing_rpc.delete_customer_invoices(data_source_uuid, customer_uuid)
        return 204, None

    @api("POST", f"{IMPORT}/invoices/<uuid>/transactions", permission=WRITE, body=schemas.TransactionIn(),
         response=schemas.TransactionOut(), status=201, summary="Record a payment or refund on an invoice")
    def import_transaction(self, request, uuid, body):
        return 201, self.billing_rpc.import_transaction(uuid, body)

    # ---- subscriptions ----

    @api("GET", f"{C}/<uuid>/subscriptions", query=schemas.PageQuery(), response=schemas.SubscriptionPage(),
         summary="A customer's subscriptions as of now")
    def list_subscriptions(self, request, uuid, query):
        per_page = query.get("per_page")
        page = self.billing_rpc.list_subscriptions(uuid, query.get("cursor"), per_page)
        return {**page, "per_page": min(per_page or 200, 200)}

    @api("GET", f"{IMPORT}/customers/<uuid>/subscriptions", query=schemas.PageQuery(),
         response=schemas.ImportSubscriptionPage(), summary="A customer's subscriptions (import namespace)")
    def list_imported_subscriptions(self, request, uuid, query):
        return self.billing_rpc.list_imported_subscriptions(uuid, query.get("cursor"), query.get("per_page"))

    @api("PATCH", f"{IMPORT}/subscriptions/<uuid>", permission=WRITE, body=schemas.CancelIn(),
         response=schemas.ImportSubscriptionOut(),
         summary="Cancel a subscription (cancelled_at), or set its cancellation dates")
    def cancel_subscription(self, request, uuid, body):
        return self.billing_rpc.cancel_subscription(uuid, body)

    @api("POST", f"{C}/<uuid>/connect_subscriptions", permission=WRITE, body=schemas.SubscriptionRefs(),
         status=202, summary="Connect subscriptions of a customer")
    def connect_subscriptions(self, request, uuid, body):
        self.billing_rpc.connect_subscriptions(uuid, body)
        return 202, None

    @api("POST", f"{C}/<uuid>/disconnect_subscriptions", permission=WRITE, body=schemas.SubscriptionRefs(),
         status=202, summary="Disconnect subscriptions of a customer")
    def disconnect_subscriptions(self, request, uuid, body):
        self.billing_rpc.disconnect_subscriptions(uuid, body)
        return 202, None

    # ---- exchange rates, revenue, metrics ----

    @api("PUT", "/v1/exchange_rates/<currency>", permission=ADMIN, body=schemas.RatesIn(),
         response=schemas.RatesOut(), summary="Load dated exchange rates into the account currency")
    def put_exchange_rates(self, request, currency, body):
        return self.billing_rpc.put_exchange_rates(currency, body["rates"])

    @api("GET", "/v1/exchange_rates/<currency>", response=schemas.RatesOut(), summary="A currency's loaded rates")
    def get_exchange_rates(self, request, currency):
        return self.billing_rpc.get_exchange_rates(currency)

    @api("GET", f"{C}/<uuid>/revenue_schedule", response=schemas.RevenueSchedule(),
         summary="A customer's revenue recognition schedule by month")
    def revenue_schedule(self, request, uuid):
        return self.billing_rpc.revenue_schedule(uuid)

    @api("GET", "/v1/metrics/mrr", query=schemas.MetricsQuery(), response=schemas.MrrSeries(),
         summary="MRR and its movements per interval")
    def metrics_mrr(self, request, query):
        return self.billing_rpc.metrics("mrr", _metrics_query(query))

    @api("GET", "/v1/metrics/arr", query=schemas.MetricsQuery(), response=schemas.ArrSeries(),
         summary="ARR per interval")
    def metrics_arr(self, request, query):
        return self.billing_rpc.metrics("arr", _metrics_query(query))

    @api("GET", "/v1/metrics/customer-count", query=schemas.MetricsQuery(), response=schemas.CustomerCountSeries(),
         summary="Paying customers per interval")
    def metrics_customer_count(self, request, query):
        return self.billing_rpc.metrics("customer-count", _metrics_query(query))


def _metrics_query(query: dict) -> dict:
    return {"start-date": query["start_date"], "end-date": query["end_date"], "interval": query.get("interval"),
            **{key: query[key] for key in ("geo", "plans", "filters") if query.get(key)}}
