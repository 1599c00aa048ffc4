//! Climate FieldView: one `credential_provider!` block.

credential_provider! {
    /// Climate FieldView credentials: your application's client id, secret and API key, and
    /// the grower's refresh token.
    ClimateFieldView {
        name: "Climate FieldView",
        title: "Climate FieldView",
        slug: "climate-field-view-credentials",
        object: "climateFieldViewCredentials",
        operation: "climate_field_view",
        request: ClimateFieldViewCredentialsRequest,
        response: ClimateFieldViewCredentials,
        fields: {
            /// Your application's client id from Climate FieldView.
            required plain client_id: String,
            /// Your application's client secret.
            required secret client_secret: String,
            /// Your partner API key (`x-api-key` on data calls).
            required secret api_key: String,
            /// The grower's refresh token.
            required secret refresh_token: String,
        },
        extras: {
            /// The current access token, once one has been issued.
            access_token: Option<String>,
            /// What the provider said about the current token.
            token_metadata: TokenMetadata,
        },
        check: CheckKind::OAuthRefresh(OAuthCheck {
            client_auth: ClientAuth::Basic { id: "clientId", secret: "clientSecret" },
            production_token_url: Some("https://api.climate.com/api/oauth/token"),
            stage_token_url: None,
        }),
        example: {
            "clientId": "your-client-id",
            "clientSecret": "your-client-secret",
            "apiKey": "your-api-key",
            "refreshToken": "grower-refresh-token"
        },
    }
}
